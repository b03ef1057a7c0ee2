//! Sans-I/O checker timing and virtual-server aggregation (being written).
