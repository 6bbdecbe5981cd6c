"""The mini program's and the H5 pages' transport: ``/mp/v1`` (Bearer JWT) and ``/h5`` (session cookie)."""

from sanic import Blueprint

from miniprogram_api.auth import bp as auth_bp
from miniprogram_api.h5_auth import bp as h5_auth_bp
from miniprogram_api.repair_api import bp as repair_bp
from miniprogram_api.h5_repair import bp as h5_repair_bp
from miniprogram_api.kb_admin import bp as kb_admin_bp
from miniprogram_api.h5_engineer import bp as h5_engineer_bp
from miniprogram_api.patient_api import bp as patient_bp
from miniprogram_api.consultations_api import bp as consultations_bp
from miniprogram_api.advice_api import bp as advice_bp
from miniprogram_api.patient_vitals_api import bp as patient_vitals_bp
from miniprogram_api.subscriptions_api import bp as subscriptions_bp

# Each blueprint carries its own url_prefix (/mp/v1, /h5/auth): the group adds none.
bp = Blueprint.group(auth_bp, h5_auth_bp, repair_bp, h5_repair_bp, kb_admin_bp, patient_bp,
                     h5_engineer_bp, consultations_bp, advice_bp, patient_vitals_bp, subscriptions_bp)

__all__ = ["bp"]
