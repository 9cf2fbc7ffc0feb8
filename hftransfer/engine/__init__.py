"""The training engine every part of hftransfer trains and evaluates with: the Trainer subclasses (``trainer``),
speed and memory options (``performance``), CPU process settings (``runtime``), the schedule the data calls for
(``schedule``), the time budget (``budget``), losses (``losses``) and temperature scaling after training
(``calibrate``). It knows no task or strategy: those layers use it."""
