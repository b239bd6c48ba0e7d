"""TRNet models (paper §3): SNR-aware module, encoders, FiLM bridge, losses, and the one
`SERSystem` class whose configurations are the seven compared systems."""

from trnet.models.system import (
    PAPER_TRAINING,
    PAPER_WIDTH,
    SERSystem,
    SystemConfig,
    SystemOutput,
    Teacher,
    TrainingConfig,
    build_teacher,
    load_config,
    load_training_config,
    teacher_config,
    training_order,
)

__all__ = [
    "PAPER_TRAINING",
    "PAPER_WIDTH",
    "SERSystem",
    "SystemConfig",
    "SystemOutput",
    "Teacher",
    "TrainingConfig",
    "build_teacher",
    "load_config",
    "load_training_config",
    "teacher_config",
    "training_order",
]
