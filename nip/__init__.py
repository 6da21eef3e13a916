"""Neural interactive proofs: prover-verifier games trained with multi-agent RL."""

__version__ = "0.1.0"
