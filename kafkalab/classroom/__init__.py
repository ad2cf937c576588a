"""The classroom kit: learner copies of the labs, nbgrader metadata, and each learner's progress."""
