"""flamekit's command-line interface (Typer). Commands stay thin; logic lives in flamekit."""
