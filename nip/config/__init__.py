"""Typed configuration schema: one module per Hydra config group.

Every dataclass here is registered in Hydra's ConfigStore by :func:`register_configs`, so an
unknown key or a value of the wrong type fails when Hydra composes the configuration. The
defaults are the paper's graph-isomorphism settings; they live only in these dataclasses.
"""

from nip.config.root import HyperParameters, register_configs, validate_hyper_params

__all__ = ["HyperParameters", "register_configs", "validate_hyper_params"]
