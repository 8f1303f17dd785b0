"""The GeoChat model: conversion, loading at a precision, generation (needs torch/transformers)."""

from rsvg_desktop.core.model.libmessages import route_library_messages

# Before any module here imports bitsandbytes or torchao: their optional-kernel warnings go to the log.
route_library_messages()
