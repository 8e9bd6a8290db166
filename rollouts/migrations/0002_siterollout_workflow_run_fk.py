"""SiteRollout.workflow_run_id (a plain integer until the engine existed) becomes a foreign key to the
run driving the site; the column keeps its name, so existing values are kept."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rollouts", "0001_initial"),
        ("workflows", "0001_initial"),
    ]

    operations = [
        migrations.RenameField(model_name="siterollout", old_name="workflow_run_id", new_name="workflow_run"),
        migrations.AlterField(
            model_name="siterollout",
            name="workflow_run",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="workflows.workflowrun",
            ),
        ),
    ]
