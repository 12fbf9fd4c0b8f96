# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""PPT tooling."""
