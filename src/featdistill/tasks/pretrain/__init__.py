"""The pretrain plug-in: a foundation teacher's features into a student backbone, from unlabeled images."""
