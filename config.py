"""fleetmarl configuration: edit these values, then run `python main.py`.

Every UPPERCASE name here is a config key. Override one for a single run without editing this file:
    python main.py --set NUM_EPISODES=400 --set ENVIRONMENT_TYPE=simplified
Other files work too: `--config my.py` (same format) or `--config my.toml` (same keys).
Written by `fleetmarl init-config` from fleetmarl.Config (the defaults and their meaning live there);
a file that sets only some keys works too: the others keep their defaults.
"""


# Environment (环境设置)
ENVIRONMENT_TYPE = 'full'  # 'full' (points keep arriving, energy and charging), 'simplified' (all points at reset, no energy limit), or the import path of a PettingZoo parallel-env module, e.g. 'mpe2.simple_spread_v3' (docs/benchmarks.md)
ENV_KWARGS = {}  # keyword arguments of a PettingZoo module's parallel_env(**ENV_KWARGS); JSON with --set, e.g. --set 'ENV_KWARGS={"N": 3, "continuous_actions": true}' (unused by 'full' and 'simplified')
NUM_AGENTS = 5  # number of vehicles (agents)
NUM_POINTS = 30  # task-point slots; in 'full' new points arrive into free slots during the episode
MAX_NUM_STEPS = 180  # steps per episode; every episode lasts exactly this long (a shift of MAX_NUM_STEPS * STEP_SECONDS)
STEP_SECONDS = 10.0  # simulated seconds per step
MAP_SIZE = 5000.0  # side of the square map in metres; the base is at the centre
AGENT_SPEEDS = None  # per-agent speed in m/s; None = default fleet: first 60% fast (30 m/s), the rest slow (15 m/s)
AGENT_CAPACITIES = None  # per-agent sample capacity; None = default fleet: fast 8, slow 24
AGENT_ENERGY_CAPACITY = None  # per-agent energy budget (arbitrary units); None = default fleet: 100 each
AGENT_ENERGY_PER_KM = None  # per-agent energy used per km travelled; None = default fleet: fast 2.0, slow 3.5
AGENT_CHARGE_SECONDS = None  # per-agent time to charge fully at the base; None = default fleet: fast 180 s, slow 480 s
POINT_SAMPLES_MIN = 1  # fewest samples at a task point
POINT_SAMPLES_MAX = 5  # most samples at a task point
PRIORITY_DEADLINES = (180.0, 600.0, 1800.0)  # seconds from a point's appearance to its deadline, for priority 1 (high), 2, 3 (low)
PRIORITY_PROBS = (0.2, 0.3, 0.5)  # probability that a new point has priority 1, 2, 3
PRIORITY_WEIGHTS = (3.0, 2.0, 1.0)  # reward weight of one sample of priority 1, 2, 3
INITIAL_POINTS = 10  # points present at reset in 'full' ('simplified' starts with NUM_POINTS)
POINT_ARRIVAL_RATE = 1.0  # 'full': mean new points per simulated minute (Poisson), while free slots exist
REWARD_DELIVERY = 1.0  # reward per priority-weighted sample delivered to the base on time
REWARD_LATE_DELIVERY = 0.2  # reward per priority-weighted sample delivered after its deadline
REWARD_PICKUP = 0.1  # small shaping reward per priority-weighted sample picked up
PENALTY_MISSED = 0.5  # penalty per priority-weighted sample whose point expired unserved
PENALTY_ENERGY = 0.002  # penalty per unit of energy used
PENALTY_INVALID = 0.05  # penalty for a masked or out-of-range action (handled as stay)
TEAM_REWARD_WEIGHT = 0.5  # share of the team's total reward added to each agent's own reward

# Learner: MADDPG + Transformer (算法设置)
GAMMA = 0.95  # discount factor
N_STEP = 1  # steps of reward summed before the critic bootstraps (n-step TD targets, within an episode); 1 = one-step
TAU = 0.01  # Polyak coefficient for target networks
BATCH_SIZE = 512  # transitions per gradient update
CAPACITY = 100000  # replay buffer size in transitions (one transition = one step of one environment, all agents)
LR_ACTOR = 5e-05  # actor (and its Transformer) learning rate
LR_CRITIC = 0.0005  # critic learning rate
UPDATE_EVERY = 8  # batched environment steps between gradient updates (8: half the updates of 4; with the dispatch prior the fleet settles at the same level by episode ~400, but its early dip lasts twice the episodes: set 4 for runs under ~400 episodes, docs/training.md)
UPDATES_PER_ROUND = 1  # gradient updates of all agents each time an update is due
WARMUP_TRANSITIONS = 4096  # transitions collected with WARMUP_POLICY before learning starts
GRAD_CLIP_NORM = 1.0  # max gradient norm per network; 0 disables clipping
HIDDEN_DIM = 128  # width of actor and critic MLPs
EMBED_DIM = 32  # Transformer model width for point features
TRANSFORMER_HEADS = 2  # attention heads in the point encoder
TRANSFORMER_LAYERS = 1  # Transformer encoder layers over the points
SHARE_PARAMETERS = False  # one actor and one critic for every vehicle, sized independently of NUM_AGENTS and NUM_POINTS (the other vehicles read as a set, a critic linear in the fleet), so its checkpoint also drives fleets of other sizes (fleetmarl eval CKPT --set NUM_AGENTS=M); False = per-vehicle networks (docs/training.md)
POINT_VIEW = 0  # with SHARE_PARAMETERS, each vehicle's networks read only POINT_VIEW active points, the dispatch prior's choice and its nearest free ones, so an update's cost per vehicle stops growing with the number of points (configs/fleet20.toml); 0 = every active point
VEHICLE_VIEW = 0  # with SHARE_PARAMETERS, each vehicle's actor reads only its VEHICLE_VIEW nearest other vehicles, so its cost per vehicle stops growing with the fleet (reading every other vehicle makes a step cost A^2); 0 = all
TARGET_POLICY_NOISE_STD = 0.2  # TD3 target policy smoothing: std of noise on target logits
TARGET_POLICY_NOISE_CLIP = 0.5  # TD3 target policy smoothing: clip of that noise
ENABLE_DELAYED_POLICY_UPDATES = True  # TD3: update actors (and targets) only every ACTOR_UPDATE_FREQUENCY critic updates
ACTOR_UPDATE_FREQUENCY = 2  # critic updates per actor update when delayed updates are on
ENABLE_LR_SCHEDULING = True  # decay learning rates by episode
LR_DECAY_TYPE = 'exponential'  # 'exponential', 'step' or 'cosine'
LR_DECAY_RATE = 0.95  # multiplier per LR_DECAY_EPISODES (exponential, step)
LR_DECAY_EPISODES = 100  # episodes per decay period (exponential, step); cosine spans NUM_EPISODES
LR_MIN_RATIO = 0.1  # learning rates never go below this fraction of their start
LR_WARMUP_EPISODES = 0  # linear warm-up from 0 to the start learning rate over this many episodes
ENABLE_PRIORITIZED_REPLAY = True  # sample transitions by TD error (sum tree)
PER_ALPHA = 0.6  # how strongly priorities shape sampling (0 = uniform)
PER_BETA = 0.4  # importance-sampling correction at start
PER_BETA_INCREMENT = 0.0001  # added to beta per update, up to 1
PER_EPSILON = 1e-06  # added to |TD error| so no transition has zero priority
NOISE_STD_START = 1.0  # exploration noise std on actor logits at episode 0
NOISE_STD_END = 0.05  # floor of the exploration noise
NOISE_DECAY = 0.9991  # multiplier of the noise std per episode
COORDINATED_CHOICES = True  # vehicles choose in index order and are not offered a point another vehicle heads to or chose this step
DISPATCH_PRIOR_LOGIT = 3.0  # logit bonus on the DISPATCH_PRIOR_POLICY dispatcher's choice, added to every actor's logits (acting, learning, eval and agent.act): the actor learns corrections to it instead of re-deriving it (residual policy learning); 0 = the actor alone. A checkpoint keeps the value it was trained with
DISPATCH_PRIOR_POLICY = 'greedy_chain'  # whose choice gets the DISPATCH_PRIOR_LOGIT bonus: 'greedy', 'greedy_shift' (greedy that also brings cargo home before the shift ends) or 'greedy_chain' (greedy_shift that also leaves a point to a busy vehicle reaching it sooner). A checkpoint keeps the one it was trained with
WARMUP_POLICY = 'greedy_chain'  # who acts until WARMUP_TRANSITIONS are stored: 'greedy', 'greedy_shift', 'greedy_chain' or 'ortools' (reference dispatchers, whose choices the actor then imitates in pre-training) or 'random'
TEACHER_POLICY = 'greedy_chain'  # reference dispatcher, 'greedy', 'greedy_shift', 'greedy_chain' or 'ortools', asked on every step; the actor imitates its recorded choice where the critic rates it higher than the actor's own (Q-filtered behaviour cloning); 'none' turns it off
BC_WEIGHT = 1.0  # weight of the Q-filtered imitation term in the actor loss (0 = none)
BC_Q_MARGIN = 1.0  # the Q-filter keeps imitating the teacher unless the critic rates the actor's own choice higher by more than this (in reward units; the critic's mean |TD error| is ~1.3): deviations must be confident, not critic noise; 0 = any higher rating. With 0 the fleet gave back part of greedy_chain's waits, which a one-step critic cannot value (docs/training.md)
PRETRAIN_UPDATES = 2000  # updates run at once when warm-up ends, in which the actor only imitates the warm-up dispatcher's stored choices (the critic learns as usual), so acting starts at its level; 0 = none (and none after a random warm-up)

# Training run (训练设置)
NUM_EPISODES = 3000  # total episodes to train (a resumed run continues up to this)
NUM_ENVS = 8  # environments stepped together; episodes run in synchronous rounds of NUM_ENVS
RANDOM_SEED = 123  # seed for environments, networks and sampling
DEVICE = 'auto'  # 'auto' (cuda if available), 'cpu' or 'cuda'
NUM_THREADS = 0  # torch CPU threads; 0 = torch's default
MIXED_PRECISION = 'auto'  # 'auto' (bf16 autocast where the CPU/GPU multiplies bf16 natively), 'bf16' or 'fp32'

# Model Checkpointing Settings (模型检查点设置)
ENABLE_MODEL_CHECKPOINTING = True  # save checkpoints during training
MODEL_SAVE_INTERVAL = 200  # episodes between checkpoints (a multiple of NUM_ENVS)
CHECKPOINTS_DIR = 'checkpoints'  # folder that holds checkpoint_ep{episode}_{YYYYmmdd_HHMMSS} folders, or a URL such as s3://bucket/prefix (pip install -e ".[s3]"; AWS_* variables)
SAVE_REPLAY_BUFFER = True  # store the replay buffer's filled part with each checkpoint, for exact resume
KEEP_LAST_CHECKPOINTS = 0  # keep only the newest K checkpoints of this run line (0 = keep all)
KEEP_BEST_CHECKPOINTS = 0  # also keep the K best by evaluation (or recent mean) reward (0 = off)
ASYNC_CHECKPOINTING = True  # write checkpoint files in a background thread so training does not stall

# Logging and evaluation (日志与评估)
LOG_DIR = 'runs'  # TensorBoard root; each run writes to LOG_DIR/<RUN_NAME>
RUN_NAME = ''  # TensorBoard run name; empty = maddpg_<env>_seed<seed>_<timestamp>
ENABLE_TENSORBOARD = True  # write TensorBoard event files
PROGRESS_BAR = True  # show a progress bar with ETA
EVAL_INTERVAL = 200  # episodes between noise-free evaluations during training (0 = off)
EVAL_EPISODES = 8  # episodes per evaluation
ORTOOLS_SOLUTION_LIMIT = 100  # 'ortools' reference policy: most improving solutions per re-plan (a count, not a clock, so runs repeat)
ORTOOLS_TIME_LIMIT_MS = 1000  # 'ortools' reference policy: safety cap in ms per re-plan (~2 ms typical); results repeat while it never binds
