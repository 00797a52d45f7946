"""Training to a wall-clock budget: measure, plan the steps, keep the clock, re-plan once if the machine slows.

probe.py measures the machine before the clock, plan.py turns the measurements into steps and scaled knobs,
policy.py decides whether a run has a budget, clock.py keeps the training clock and re-plans a slowed run.
"""
