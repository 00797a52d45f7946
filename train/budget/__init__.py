"""Training to a wall-clock budget: measure, plan the steps, keep the clock, re-plan once if the machine's speed moves.

plan.py holds the plan (a typed record until run.json) and what a run costs, probe.py measures the machine before the
clock, policy.py decides a session's plan (whether a budget applies, which batch and model size), clock.py keeps the
training clock and re-plans a run whose speed left the plan's.
"""
