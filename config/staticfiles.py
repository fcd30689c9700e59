import whitenoise.storage


class ManifestStaticFilesStorage(whitenoise.storage.CompressedManifestStaticFilesStorage):
    """WhiteNoise's compressed manifest storage, hashing the chat page's ES module imports too."""

    support_js_module_import_aggregation = True  # rewrite `import … from "./x.js"` to hashed names
    # Each pass settles one more level of imports; main.js sits eleven modules deep (Django's default: 5).
    max_post_process_passes = 20
