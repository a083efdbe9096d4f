"""The run report: rows read from the results store, rendered through Jinja to HTML and Markdown."""
