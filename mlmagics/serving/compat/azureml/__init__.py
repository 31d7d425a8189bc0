"""mlmagics stand-in for the parts of the Azure ML v1 SDK that scoring scripts import."""
