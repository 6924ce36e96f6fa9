"""Learning-rate schedules (placeholder; being written)."""


class Schedule:
    pass
