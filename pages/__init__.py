"""The workbench's Streamlit page scripts and the helper modules they share."""
