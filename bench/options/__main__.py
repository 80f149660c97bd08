"""python -m bench.options > docs/run-options.md"""

from bench.options.docs import docs_markdown

print(docs_markdown(), end="")
