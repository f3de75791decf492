"""Downstream analysis: experiment readouts and the reverse-ETL CRM export."""
