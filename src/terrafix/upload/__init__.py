"""terrafix.upload"""
