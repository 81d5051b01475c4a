"""The run engine: admission (quotas) and dispatch (the fair queue), claim (the one place a run is
claimed: queued -> starting), the supervisor (launch, frames, deadline), output (log capture and masking),
outcome (a pure decide() from what the sandbox did to a status and errors), ending (a run's end, written in
one transaction by store/run_end), and recovery (take-over after a crash, orphan sweep, stop polling).

Why one package: a run's life from queued to final is read here, top to bottom, and nowhere else."""
