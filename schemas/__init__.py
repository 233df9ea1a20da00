"""rcaflow's contracts: Avro schemas, their typed mirrors, the codec and the topic table."""
