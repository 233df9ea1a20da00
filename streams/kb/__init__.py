"""The knowledge base: ``rcaflow kb`` folds incidents, rca-result, actions and approvals into one
Elasticsearch document per incident, and ``similar`` reads past resolved incidents of one tenant back.

A room of its own: it may use schemas, executors and settings; nothing in the pipeline waits on it.
"""
