"""Backbone encoders, tokenizers, the representation transformation network (RTN), its placement and the
fit checks of a config against a model. May import common, config and data (the synthetic text that
pre-trains tiny-pretrained).

The package itself imports nothing: ``model_config`` and ``fit`` (a model's config and the fit
check) load without torch, which only ``backbone``, ``rtn``, ``tail`` and a tiny-pretrained build
need, so that a search driver checks its trials' configs in about a second."""
