"""metaxl-tune: hyperparameter search and ablations for MetaXL (Xia et al., NAACL 2021)."""

__version__ = "0.1.0"
