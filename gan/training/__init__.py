"""A training run: the state and its one iteration (step), the compiled loop (loop), the run
(run.train) and what it does between chunks (actions), checkpoints and their resume rules,
and what keeps a run safe (runlock, interrupts) and fast (compilation, distribute)."""
