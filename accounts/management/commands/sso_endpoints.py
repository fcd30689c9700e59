import requests
from django.core.management.base import BaseCommand, CommandError

# The provider's discovery document field behind each of our settings (OpenID Connect Discovery 1.0).
FIELDS = {
    "OIDC_ISSUER": "issuer",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
    "OIDC_OP_LOGOUT_ENDPOINT": "end_session_endpoint",
}


class Command(BaseCommand):
    help = "Print the single sign-on settings of an OpenID Connect provider, read from its discovery document."

    def add_arguments(self, parser) -> None:
        parser.add_argument("issuer", help="e.g. https://sso.example.org/realms/acme")

    def handle(self, *args, issuer: str, **options) -> None:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=10)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise CommandError(f"Could not read {url}: {exc}") from None
        if not isinstance(document, dict) or str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
            raise CommandError(f"{url} is not the discovery document of the issuer {issuer}.")
        for name, field in FIELDS.items():
            if document.get(field):
                self.stdout.write(f"{name}={document[field]}")
        self.stdout.write("# and OIDC_RP_CLIENT_ID=…, OIDC_RP_CLIENT_SECRET=… from the client registered at the provider")
