# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The model card and Space templates. Installed as `ppt_tools.templates` (pyproject maps this folder there); nothing
imports this folder under its own name."""
