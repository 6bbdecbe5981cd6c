"""Patients, their records and visits, and the import from the hospital information system (FHIR R4)."""
