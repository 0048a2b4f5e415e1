"""Test-time search over a policy's samples: best-of-N with verifier, vote and likelihood selectors."""
