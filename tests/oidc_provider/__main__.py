"""Start the test identity provider: `python -m tests.oidc_provider PORT`.

From the environment: IDP_DATABASE_URL (an empty database of its own), IDP_CLIENT (JSON: client_id,
client_secret, redirect_uri, post_logout_redirect_uri) and IDP_USERS (JSON list of username,
password, email, groups). A fresh RS256 signing key is made at every start.
"""

import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def signing_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def seed() -> None:
    from django.contrib.auth.models import Group, User
    from oauth2_provider.models import Application

    for one in json.loads(os.environ["IDP_USERS"]):
        user = User.objects.create_user(one["username"], email=one["email"], password=one["password"])
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in one["groups"]])
    client = json.loads(os.environ["IDP_CLIENT"])
    Application.objects.create(
        name="chat",
        client_id=client["client_id"],
        client_secret=client["client_secret"],  # stored hashed on save
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=client["redirect_uri"],
        post_logout_redirect_uris=client["post_logout_redirect_uri"],
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )


def main() -> None:
    port = sys.argv[1]
    os.environ["IDP_RSA_PRIVATE_KEY"] = signing_key_pem()
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    seed()
    call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, use_threading=True, verbosity=0)


if __name__ == "__main__":
    main()
