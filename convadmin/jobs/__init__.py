"""Background jobs on Django's task framework (``django.tasks``): enqueueing, the clock, the worker's pulse.

Provider jobs live in their own apps' ``tasks`` modules; this package holds only what every job shares.
"""
