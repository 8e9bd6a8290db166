"""Admin forms whose save goes through a service.

Django's admin saves model forms itself; here the form's `clean()` calls the service instead (with
the requesting user as actor), so the admin validates, audits and refuses exactly as the API does, and
a refusal shows on the form next to the field it names. The admin's own save is then a no-op.
`StateServiceForm` adds a person's change of state (the admin's twin of fleet.api.service_views.Writes.set_state).
`errors_to_form` puts a service's refusals next to the fields of the plain forms of confirmation pages.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import admin
from django.db import models, transaction
from django.http import HttpRequest

from fleet.audit.choices import Source
from fleet.errors import FleetError

M = TypeVar("M", bound=models.Model)


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


class StateServiceForm(ServiceForm):
    """A ServiceForm of a model whose `state` a person may change, with the reason why; `state_help()` is
    the help text beside the state of an existing object."""

    reason = forms.CharField(required=False, help_text="why the state changes (kept in the audit log)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "state" in self.fields:
            self.fields["state"].help_text = self.state_help()

    def state_help(self) -> str:
        return ""

    def update_then_set_state(
        self, actor: Any, *, subject: str, update: Callable[..., M], set_state: Callable[..., M], **changes: Any
    ) -> M:
        """The fields through `update`, then the form's state (if it changed) through `set_state` with the
        form's reason, in one transaction: a refused state change leaves the other fields unchanged too."""
        with transaction.atomic():
            obj: Any = update(**{subject: self.instance}, actor=actor, source=Source.ADMIN, **changes)
            if self.cleaned_data["state"] != obj.state:
                obj = set_state(
                    **{subject: obj},
                    to=self.cleaned_data["state"],
                    actor=actor,
                    source=Source.ADMIN,
                    reason=self.cleaned_data.get("reason", ""),
                )
        return obj


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
