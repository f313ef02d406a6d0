"""The served app, gradio-free: what ``app.py`` serves, as a public service.

The library (:mod:`pipeline`) trusts its caller; a public server does not. This package is the server's side of
that line, each module one job:

- :mod:`~pipeline.serve.config`: the server's flags (each with an environment variable) and the service they build;
- :mod:`~pipeline.serve.service`: :class:`~pipeline.serve.service.Service`, the app's one worker, in parts:
  :mod:`~pipeline.serve.models` (menus, model cache, threads), :mod:`~pipeline.serve.endpoints` (the script
  endpoints), :mod:`~pipeline.serve.photo` (the photo tab), :mod:`~pipeline.serve.live` (live sessions);
- what a client may send: :mod:`~pipeline.serve.menus` (the model names), :mod:`~pipeline.serve.options` (the option
  bounds, derived from the pipelines' declarations), :mod:`~pipeline.serve.intake` (the image, and
  :class:`~pipeline.serve.intake.RequestError`);
- what it gets back: :mod:`~pipeline.serve.files` (pictures written whole before they are handed out) and
  :mod:`~pipeline.serve.page_html` (the page's HTML pieces);
- the process: :mod:`~pipeline.serve.cache` (models loaded once), :mod:`~pipeline.serve.process` (thread priority,
  malloc arenas), :mod:`~pipeline.serve.zerogpu` (Hugging Face ZeroGPU).

Nothing here imports gradio; ``app.py`` lays the page out and wires it to a :class:`Service`.
"""
