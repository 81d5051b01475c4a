"""The run engine: claim, supervise, output, outcome, recovery, dispatch, admission."""
