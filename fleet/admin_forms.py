"""Admin forms whose save goes through a service.

Django's admin saves model forms itself; here the form's `clean()` calls the service instead (with
the requesting user as actor), so the admin validates, audits and refuses exactly as the API does, and
a refusal shows on the form next to the field it names. The admin's own save is then a no-op.
`errors_to_form` does the same for the plain forms of confirmation pages that call a service themselves.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from fleet.errors import FleetError


class ServiceForm(forms.ModelForm):
    """Subclasses implement `apply(actor) -> saved instance`; `request` is set by ServiceAdminMixin."""

    request: HttpRequest

    def apply(self, actor: Any) -> models.Model:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        try:
            self.instance = self.apply(self.request.user)
        except FleetError as exc:
            if not exc.errors:
                raise forms.ValidationError(exc.message) from exc
            for field, messages in exc.errors.items():
                self.add_error(field if field in self.fields else None, messages)
        return cleaned


def errors_to_form(form: forms.Form, exc: FleetError) -> bool:
    """A service's per-field refusals next to the form's fields; False when none of them is a form field."""
    shown = False
    for field, errors in exc.errors.items():
        if field in form.fields:
            form.add_error(field, errors)
            shown = True
    return shown


class ServiceAdminMixin(admin.ModelAdmin):
    """Hands the request to a ServiceForm and skips the admin's own save (the service saved)."""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)
        return type(form_class.__name__, (form_class,), {"request": request})

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Nothing to do: ServiceForm.clean saved through the service."""
