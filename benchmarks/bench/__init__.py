"""The parts of benchmarks/run.py (make bench): models, peers, measurement, sections, targets."""
