"""The privacy stage: data-subject erasures recorded over HTTP and run to completion by a timer."""
