"""What the Gradio app (app.py) calls: the service (library calls with readable refusals), its plotly figures,
and the app or provider as a subprocess for tests and benchmarks."""
