"""Profile and tuning reports (HTML, Markdown, terminal) built from run directories.
Not built yet: it arrives with the reports issue."""
