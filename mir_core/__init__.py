"""mir-workspace: LLM-guided multimodal intent recognition, run from the notebooks.

Importing the package silences the progress bars of the libraries underneath
(``mir_core.progress.quiet_libraries``): in JupyterLab only the workspace's own bars show.
"""
from .progress import quiet_libraries as _quiet_libraries

_quiet_libraries()
