"""Python helpers shared by analysis scripts, test oracles, fixture generators and benchmarks."""
