"""The per-record logic of every pipeline stage, on typed records: no Faust, no FastAPI, no Kafka client."""
