"""The learner: stacked networks, the agents (views of one team), MADDPG, replay and schedules."""

from fleetmarl.learner.actions import select_actions, straight_through_gumbel
from fleetmarl.learner.agent import AgentTeam, AgentView, MADDPGAgent, build_agents
from fleetmarl.learner.maddpg import MADDPG

__all__ = ["MADDPG", "AgentTeam", "AgentView", "MADDPGAgent", "build_agents", "select_actions",
           "straight_through_gumbel"]
