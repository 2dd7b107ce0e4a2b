"""Evaluation: the paper's metrics, subject consistency, the Observer's aesthetic review, and
the benchmark protocols and reports behind `storyagent eval`."""
