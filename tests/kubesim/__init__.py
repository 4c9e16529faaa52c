"""The parts of ``tests/kube_sim.py``'s simulated cluster, one module per concern; import
``KubeSim`` from ``kube_sim``."""
