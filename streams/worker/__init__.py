"""The Faust worker: the app, its topics and tables, one registrar per agent; the only package importing Faust."""
