"""opensim-pinn: label-free, physics-informed muscle force estimation for OpenSim models.

The API (imported on first use, so ``import opensim_pinn`` stays light)::

    from opensim_pinn import train_network, run_demo, Trainer
    from opensim_pinn.predict import predict
    from opensim_pinn.compare import compare

- :func:`train_network`: train the MJCA-BiGRU network on trials of a model (no labels),
  writing ``checkpoint.pt`` and ``history.csv``; :func:`resume_training` finishes an
  interrupted one;
- :func:`~opensim_pinn.predict.predict`: activations, forces and states of a new trial,
  as OpenSim files;
- :func:`~opensim_pinn.compare.compare`: the network against OpenSim Static Optimization;
- :func:`run_demo`: all of it on the built-in example;
- :class:`Trainer`: fit / predict / save / load, for scripts and notebooks.

``predict`` and ``compare`` are not re-exported here: they share their names with their
modules, and once a module is imported Python binds the package attribute to it.
"""

__version__ = "0.1.0"

_LAZY = {
    "train_network": ("opensim_pinn.train", "train_network"),
    "resume_training": ("opensim_pinn.train", "resume_training"),
    "Trainer": ("opensim_pinn.trainer", "Trainer"),
    "TrainConfig": ("opensim_pinn.trainer", "TrainConfig"),
    "NetworkConfig": ("opensim_pinn.network", "NetworkConfig"),
    "run_demo": ("opensim_pinn.demo", "run_demo"),
    "StreamingPredictor": ("opensim_pinn.streaming", "StreamingPredictor"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'opensim_pinn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
