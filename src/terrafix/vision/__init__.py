"""Vision: features, matching, place recognition, registration (and odometry).

Per frame the onboard program calls::

    from terrafix.vision.registration import VisualPositioner, VpsConfig
    vp = VisualPositioner.open(cache_root, VpsConfig(ground_alt_m=...))   # at take-off
    result = vp.locate(frame, R_body_to_ned_fc, baro_alt_m, prior=(lat, lon, radius_m) | None)
    result.fix            # terrafix.measurements.AbsoluteFix, or None with result.reason

Before flight, `terrafix.vision.provision.main` (CLI: ``terrafix vps provision``) computes the
map features and the chunk retrieval index of a tile cache. Modules: `features` (SIFT and the
extractor interface), `xfeat` (XFeat on ONNX Runtime), `matching`, `geometry`, `ortho`,
`mapfeatures`, `retrieval`, `pose`, `registration`, `provision`, `rasters`.
Kept free of imports so that importing one module does not load FAISS or ONNX Runtime.
"""
