"""Building blocks of `sers report`: reading stage outputs (inputs), one document model
rendered to HTML and Markdown (document), figures (figures), and the context sections
(context). The stage itself is :mod:`sers.pipeline.report`."""
