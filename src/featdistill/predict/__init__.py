"""Running a trained student on image files: ``featdistill predict`` (:func:`.predictor.predict`)."""
