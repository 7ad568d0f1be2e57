"""Mem-α memory construction (Wang et al. 2025): memory store, tools, episodes, answerer, env.

===============  ===================================================================
module           purpose
===============  ===================================================================
``text``         the token count, BM25, sentence splitting (shared by everything)
``store``        :class:`MemoryStore`: core paragraph + semantic/episodic item lists
``tools``        the four tools, the ``<tool_call>`` format and its never-raising parser
``data``         :class:`Episode`, the synthetic generator (four competencies), JSONL loader
``answerer``     :class:`Answerer` (BM25 default, HF, OpenAI-compatible) and the metrics
``reward``       content validity and the reward terms
``env``          :class:`MemoryConstructionEnv` (``rlmem/MemoryConstruction-v0``)
``evaluate``     run a writer over held-out episodes, per-competency reward and accuracy
===============  ===================================================================

Importing this package does not import the env module (Gymnasium entry points are strings).
"""

from rlmem.envs.memalpha.answerer import Answerer, BM25Answerer, HFAnswerer, OpenAIAnswerer, score_answer
from rlmem.envs.memalpha.data import COMPETENCIES, Episode, GeneratorConfig, generate_episode, load_episodes
from rlmem.envs.memalpha.store import MemoryStore
from rlmem.envs.memalpha.text import count_tokens
from rlmem.envs.memalpha.tools import TOOL_SCHEMAS, parse_tool_calls, run_action, tool_call

__all__ = [
    "COMPETENCIES",
    "TOOL_SCHEMAS",
    "Answerer",
    "BM25Answerer",
    "Episode",
    "GeneratorConfig",
    "HFAnswerer",
    "MemoryStore",
    "OpenAIAnswerer",
    "count_tokens",
    "generate_episode",
    "load_episodes",
    "parse_tool_calls",
    "run_action",
    "score_answer",
    "tool_call",
]
