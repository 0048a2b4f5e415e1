"""Test-time search over a policy's samples.

* :mod:`agents.search.best_of_n`: best-of-N from independent samples, picked by the env reward, a (weighted)
  majority vote, a learned ORM/PRM or the policy's likelihood; curves over N.
* :mod:`agents.search.tree`: step-level search on a KV-cached engine guided by a step scorer (a PRM): beam
  search, diverse verifier tree search (DVTS), lookahead search and best-of-N, with token accounting.
"""
