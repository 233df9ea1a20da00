"""rcaflow's composition root: settings, the stages, the processes that run them, and the `rcaflow` command."""
