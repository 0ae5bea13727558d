"""The replay buffer's rooms; :class:`fleetmarl.learner.buffer.ReplayBuffer` puts them together.

- :mod:`.codecs`: how one observation frame is stored compactly (and rebuilt bit for bit).
- :mod:`.storage`: the ring of transitions, each observation stored once, and the pins that keep a
  background save's chunks intact while ``add`` goes on.
- :mod:`.batch`: a sampled minibatch, read from the storage (n-step targets, next frames, decoding).
- :mod:`.prioritized`: the sum tree and the stratified draw of prioritized replay.
- :mod:`.persistence`: the checkpoint format (head and immutable chunks), saving and restoring it.
- :mod:`.format_v1`: the conversion of version-1 states (before compact replay).

Nothing is imported here, so that importing one room does not load the others.
"""
